"""`GET /metrics` in the Prometheus text format (scraped from inside the network)."""

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter()


@router.get("/metrics", tags=["ops"], summary="Prometheus metrics", include_in_schema=True)
async def metrics() -> Response:
    """Counters and histograms of this worker."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
