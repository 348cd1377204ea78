"""Schemathesis checks of our own, loaded with SCHEMATHESIS_HOOKS=checks (PYTHONPATH=tests/openapi).

A route the document lists must be routed: its method is never refused (405), and a 404 is
the backend's NOT_FOUND for the resource, never the edge's "no route for …".
"""

import schemathesis


@schemathesis.check
def documented_routes_are_served(ctx, response, case):
    if case.method.upper() != case.operation.method.upper():
        return None  # a method the document does not list for the path: 405 is right
    if response.status_code == 405:
        raise AssertionError(f"{case.method} {case.formatted_path} is documented, yet answered 405")
    if response.status_code == 404:
        try:
            message = response.json().get("message", "")
        except Exception:  # noqa: BLE001 - any non-JSON 404 is not the backend's Status
            message = response.text
        if not isinstance(message, str) or message.startswith("no route for"):
            raise AssertionError(f"{case.method} {case.formatted_path} is documented, yet answered {message!r}")
    return None
