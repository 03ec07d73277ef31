"""The HTTP client every upstream shares: httpx's, without cookies."""

from __future__ import annotations

from typing import Any

import httpx


class _NoCookies(httpx.Cookies):
    """A jar that stays empty: answers' `Set-Cookie` headers are not read."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class CookielessClient(httpx.AsyncClient):
    """httpx's client without a cookie jar. TorchServe sets no cookies, and a gateway must not carry a cookie
    from one caller's answer into another caller's request; yet httpx runs every answer through urllib's cookie
    machinery, which took 8% of the gateway's CPU per request in-process. `cookies` is httpx's public property
    for the jar, and the one its requests and answers go through."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("the upstream client keeps no cookies")
