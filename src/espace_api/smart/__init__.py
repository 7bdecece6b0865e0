"""SMART App Launch 2.x, standalone patient launch: patient-authorised third-party apps."""
