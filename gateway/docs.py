"""The interactive API documentation at /schema, served entirely by this process: Swagger
UI's files come from the `swagger-ui-py` package (never a CDN), so the page works offline
and behind firewalls. /schema/openapi.json and /schema/openapi.yaml are the description."""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router

ASSETS_PATH = "/schema/assets"
ASSETS = Path(swagger_ui.__file__).parent / "static"


def openapi_config(version: str) -> OpenAPIConfig:
    swagger = SwaggerRenderPlugin(path=["/", "/swagger"], js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                                  css_url=f"{ASSETS_PATH}/swagger-ui.css",
                                  standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
                                  favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>")
    return OpenAPIConfig(title="Shoal", version=version,
                         description="Many small models on one device: embeddings, rerankers, ColBERT, SPLADE, "
                                     "classifiers.",
                         render_plugins=[swagger, JsonRenderPlugin(), YamlRenderPlugin()])


def docs_assets() -> Router:
    """Swagger UI's JavaScript and CSS; open like the probes (a browser sends no bearer key)."""
    return create_static_files_router(path=ASSETS_PATH, directories=[ASSETS], opt={"open": True},
                                      include_in_schema=False)
