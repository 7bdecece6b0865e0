"""What the hot interactions run: the service call each builds from its request, shared by
the FastAPI routes (api/fhir_routes.py, for the OpenAPI document) and the fast path that
serves them (api/fast_path.py), so that the two cannot drift apart."""

from collections.abc import Awaitable, Callable

from starlette.requests import Request

from espace_api.api.http import create_criteria, read_resource, strict_handling
from espace_api.fhir.registry import ResourceType
from espace_api.resources import bulk, service
from espace_api.resources.results import Result
from espace_api.resources.service import Context

Call = Callable[[Context], Awaitable[Result]]


async def read(_: Request, rtype: ResourceType, id_: str) -> Call:
    """read (run in autocommit: its only write is the audit row)."""
    return lambda ctx: service.read(ctx, rtype, id_)


async def search(request: Request, rtype: ResourceType) -> Call:
    """search-type by GET (run in autocommit)."""
    params = list(request.query_params.multi_items())
    strict = strict_handling(request)
    return lambda ctx: service.search(ctx, rtype, params, strict=strict)


async def create(request: Request, rtype: ResourceType) -> Call:
    """create, conditional with If-None-Exist or the query string."""
    body = await read_resource(request)
    cond = create_criteria(request)
    return lambda ctx: service.create(ctx, rtype, body, if_none_exist=cond)


async def bundle(request: Request) -> Call:
    """A batch or transaction Bundle (`POST /`)."""
    body = await read_resource(request)
    return lambda ctx: bulk.process(ctx, body)
