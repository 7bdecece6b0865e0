"""Document deposits (IHE MHD ITI-65) and content (Binary) on top of the blob store."""
