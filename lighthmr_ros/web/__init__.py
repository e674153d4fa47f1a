"""Browser demo: a FastAPI app serving the predictor and the built front end (web/ -> web/static)."""
from lighthmr_ros.web.app import STATIC_DIR, WebSettings, create_app

__all__ = ["STATIC_DIR", "WebSettings", "create_app"]
