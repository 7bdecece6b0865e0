"""Public auth endpoints (token, JWKS, SMART discovery). Filled in by the auth issue."""

from fastapi import APIRouter

router = APIRouter()
