"""The slide routes (``--slides DIR``; see :mod:`lavis.apps.serve.slide_library`).

    GET /v1/slides                           the slides: id, name, width, height, mpp, overlays
    GET /v1/slides/{id}                      one slide
    GET /v1/slides/{id}/overlays/{k}         the k-th analysis of it: lavis.slides' GeoJSON
    GET /slides/{id}.dzi                     DeepZoom descriptor (OpenSeadragon's convention)
    GET /slides/{id}_files/{level}/{col}_{row}.{jpeg|png}   one DeepZoom tile

A region of a slide is asked about in the chat API as an image whose URL is
``slide://{id}?x=&y=&w=&h=`` (level-0 pixels, optional ``&mpp=``); see :func:`read_region`.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from typing import Any

from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from lavis.apps.serve.errors import APIError, bad
from lavis.apps.serve.slide_library import SlideLibrary, SlideNotFound
from lavis.apps.serve.wire import SlideRegion
from lavis.common.errors import DataError

logger = logging.getLogger(__name__)

_TILE = re.compile(r"^(?P<id>.+)_files/(?P<level>\d{1,3})/(?P<col>\d{1,7})_(?P<row>\d{1,7})\.(?P<fmt>jpeg|jpg|png)$")
_OVERLAY = re.compile(r"^(?P<id>.+)/overlays/(?P<index>\d{1,4})$")
NO_SLIDES = "this server shows no slides: start it with --slides DIR"


class SlideRoutes:
    def __init__(self, library: SlideLibrary | None, authorize: Callable[[Request], None]) -> None:
        self.library = library
        self.authorize = authorize

    def routes(self) -> list[Route]:
        return [
            Route("/v1/slides", self.list, methods=["GET"]),
            Route("/v1/slides/{rest:path}", self.slide, methods=["GET"]),
            Route("/slides/{rest:path}", self.deepzoom, methods=["GET"]),
        ]

    def _library(self) -> SlideLibrary:
        if self.library is None:
            raise APIError(404, NO_SLIDES, "no_slides")
        return self.library

    async def list(self, request: Request) -> Response:
        self.authorize(request)
        slides = await run_in_threadpool(self.library.slides) if self.library else []
        return JSONResponse({"object": "list", "data": [s.card() for s in slides]})

    async def slide(self, request: Request) -> Response:
        self.authorize(request)
        rest = request.path_params["rest"]
        overlay = _OVERLAY.match(rest)
        try:
            if overlay:
                found = await run_in_threadpool(self._library().overlay, overlay["id"], int(overlay["index"]))
                return FileResponse(found.geojson, media_type="application/geo+json")
            return JSONResponse((await run_in_threadpool(self._library().find, rest)).card())
        except SlideNotFound as err:
            raise APIError(404, str(err), "slide_not_found") from None

    async def deepzoom(self, request: Request) -> Response:
        self.authorize(request)
        rest = request.path_params["rest"]
        library = self._library()
        try:
            if rest.endswith(".dzi"):
                xml = await run_in_threadpool(library.dzi, rest[:-4], "jpeg")
                return Response(xml, media_type="application/xml")
            tile = _TILE.match(rest)
            if tile is None:
                raise SlideNotFound(f"'{rest[:120]}' is neither {{id}}.dzi nor {{id}}_files/{{level}}/{{col}}_{{row}}.jpeg")
            fmt = "png" if tile["fmt"] == "png" else "jpeg"
            data = await run_in_threadpool(self._tile_bytes, library, tile, fmt)
            return Response(data, media_type=f"image/{fmt}", headers={"Cache-Control": "private, max-age=3600"})
        except SlideNotFound as err:
            raise APIError(404, str(err), "slide_not_found") from None
        except DataError as err:
            logger.warning("slide read failed: %s", err)
            raise APIError(500, f"the slide could not be read: {err}", "slide_unreadable") from None

    @staticmethod
    def _tile_bytes(library: SlideLibrary, tile: Any, fmt: str) -> bytes:
        image = library.tile(tile["id"], int(tile["level"]), int(tile["col"]), int(tile["row"]))
        buffer = io.BytesIO()
        image.save(buffer, format=fmt.upper(), **({"quality": 85} if fmt == "jpeg" else {}))
        return buffer.getvalue()


def read_region(library: SlideLibrary | None, region: SlideRegion, field: int, max_megapixels: float) -> Image.Image:
    """The pixels a ``slide://`` image URL names: the level-0 box read at the model's field size
    (its longer side ``field`` pixels; smaller boxes at level 0), or at ``mpp`` microns per pixel
    when given. Errors are ``APIError``s naming the URL (``region.param``)."""
    if library is None:
        raise bad(f"{region.param}: {NO_SLIDES}", region.param, "no_slides")
    try:
        slide = library.find(region.slide_id)
    except SlideNotFound as err:
        raise APIError(404, f"{region.param}: {err}", "slide_not_found", region.param) from None
    width, height = slide.info.dimensions
    if region.x + region.w > width or region.y + region.h > height:
        raise bad(f"{region.param}: the region x={region.x} y={region.y} w={region.w} h={region.h} is not inside "
                  f"the slide ({width} x {height} level-0 pixels)", region.param)
    side = field
    if region.mpp is not None:
        if slide.info.mpp is None:
            raise bad(f"{region.param}: the slide records no resolution, so '&mpp=' cannot be honoured; leave it out",
                      region.param)
        downsample = region.mpp / slide.info.mpp
        if downsample < 0.97:
            raise bad(f"{region.param}: mpp={region.mpp:g} is finer than the slide's level 0 "
                      f"({slide.info.mpp:.3g} um/px); use {slide.info.mpp:.3g} or more", region.param)
        side = max(1, round(max(region.w, region.h) / downsample))
    scale = min(1.0, side / max(region.w, region.h))
    if region.w * scale * region.h * scale > max_megapixels * 1e6:
        raise APIError(413, f"{region.param}: reading that region at mpp={region.mpp:g} gives "
                            f"{region.w * scale * region.h * scale / 1e6:.0f} megapixels, over this server's limit "
                            f"of {max_megapixels:g}; ask at a coarser mpp or about a smaller region",
                       "image_too_large", region.param)
    try:
        return library.region(slide.id, (region.x, region.y, region.w, region.h), side)
    except DataError as err:
        raise APIError(500, f"{region.param}: the slide could not be read: {err}", "slide_unreadable") from None
