"""API errors as the real kube-apiserver shapes them: `Status` objects with reason, details and causes.

Clients key off `reason` and `code` (the Python client's ApiException.status/.reason, kubectl's
"Error from server (NotFound): ..."), so the messages below copy the real server's wording.
"""


class ApiError(Exception):
    """An error answered as a `Status` body with the given HTTP code."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self):
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(res, name, kind=None, causes=None):
    # The real server leaves `group` out for the core group; `kind` is the resource (plural) for
    # NotFound/AlreadyExists and the Kind for Invalid.
    details = {"name": name} if name is not None else {}
    if res.group:
        details["group"] = res.group
    details["kind"] = kind or res.plural
    if causes:
        details["causes"] = causes
    return details


def not_found(res, name):
    return ApiError(404, "NotFound", f'{res.qualified} "{name}" not found', _details(res, name))


def already_exists(res, name):
    return ApiError(409, "AlreadyExists", f'{res.qualified} "{name}" already exists', _details(res, name))


def conflict(res, name):
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again", _details(res, name))


def cause(field, message, reason="FieldValueInvalid"):
    return {"reason": reason, "message": message, "field": field}


def invalid(res, name, causes):
    """422 Invalid: `Job.batch "x" is invalid: <field>: <message>` (several causes are bracketed)."""
    parts = [f"{c['field']}: {c['message']}" for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(422, "Invalid", f'{res.kind_qualified} "{name}" is invalid: {summary}',
                    _details(res, name, kind=res.kind, causes=causes))


def bad_request(message, details=None):
    return ApiError(400, "BadRequest", message, details)


def method_not_allowed():
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def path_not_found():
    # What the real server answers for an unknown URL path (no details).
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def gone(message):
    return ApiError(410, "Expired", message)


def unsupported_media_type(content_type):
    return ApiError(415, "UnsupportedMediaType",
                    f'the body of the request was in an unknown format - accepted media types include: '
                    f'application/json, application/yaml, application/json-patch+json, '
                    f'application/merge-patch+json, application/apply-patch+yaml '
                    f'(this double reads protobuf only for Namespace, Secret and ConfigMap; got "{content_type}")')


def success(res, name, uid=None):
    """What DELETE answers once the object is gone."""
    details = _details(res, name)
    if uid:
        details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
