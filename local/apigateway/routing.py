"""Route matching as API Gateway (REST) does it: resources form a tree, a literal child wins over a
``{param}`` child, which wins over a greedy ``{proxy+}`` child; the method is looked up only after the
resource is chosen (an explicit method beats ANY). A request whose resource exists but whose method does
not is *not* retried against a less specific resource: AWS answers 403 Missing Authentication Token."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from local.model import ApiSpec, RouteSpec

_PARAM = re.compile(r"^\{([^{}+]+)\}$")
_GREEDY = re.compile(r"^\{([^{}+]+)\+\}$")

# Segment kinds, in the order API Gateway prefers them.
_LITERAL, _PARAM_KIND, _GREEDY_KIND = 0, 1, 2


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


@dataclass(frozen=True)
class _Segment:
    kind: int
    text: str  # the literal, or the parameter name


@dataclass
class Resource:
    """One resource path of one API with its methods (``ANY`` included)."""

    api: ApiSpec
    path: str
    segments: tuple[_Segment, ...]
    methods: dict[str, RouteSpec]

    def specificity(self) -> tuple[int, ...]:
        # Lexicographic on segment kinds: earlier literal segments win, a greedy tail loses to everything.
        return tuple(s.kind for s in self.segments)

    def match(self, parts: list[str]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        for i, seg in enumerate(self.segments):
            if seg.kind == _GREEDY_KIND:
                rest = parts[i:]
                if not rest:  # {proxy+} needs at least one segment
                    return None
                params[seg.text] = "/".join(rest)
                return params
            if i >= len(parts):
                return None
            if seg.kind == _LITERAL:
                if parts[i] != seg.text:
                    return None
            else:
                params[seg.text] = parts[i]
        return params if len(parts) == len(self.segments) else None


@dataclass
class Match:
    resource: Resource
    route: RouteSpec | None  # None: the resource exists but not this method
    path_parameters: dict[str, str]


def _parse(path: str) -> tuple[_Segment, ...]:
    out: list[_Segment] = []
    for text in _segments(path):
        if m := _GREEDY.match(text):
            out.append(_Segment(_GREEDY_KIND, m.group(1)))
        elif m := _PARAM.match(text):
            out.append(_Segment(_PARAM_KIND, m.group(1)))
        else:
            out.append(_Segment(_LITERAL, text))
    return tuple(out)


class RouteTable:
    """Every route of every API served on one port (paths without the stage prefix, like sam local)."""

    def __init__(self, apis: dict[str, ApiSpec]) -> None:
        resources: dict[tuple[str, str], Resource] = {}
        for api in apis.values():
            for route in api.routes:
                norm = "/" + "/".join(_segments(route.path))
                key = (api.logical_id, norm)
                if key not in resources:
                    resources[key] = Resource(api, norm, _parse(norm), {})
                    self._add_parents(resources, api, norm)
                resources[key].methods[route.method.upper()] = route
        # Stable sort keeps template order between equally specific resources of different APIs.
        self.resources = sorted(resources.values(), key=Resource.specificity)

    @staticmethod
    def _add_parents(resources: dict[tuple[str, str], Resource], api: ApiSpec, path: str) -> None:
        # Intermediate resources exist in API Gateway (with no methods): /a is a resource when /a/b is.
        parts = _segments(path)
        for n in range(len(parts)):
            parent = "/" + "/".join(parts[:n])
            key = (api.logical_id, parent)
            if key not in resources:
                resources[key] = Resource(api, parent, _parse(parent), {})

    def match(self, method: str, raw_path: str) -> Match | None:
        """Within one API the most specific matching resource decides (its method or 403). Several APIs share
        the port, so an API whose resource lacks the method does not hide another API's route."""
        parts = [unquote(p) for p in _segments(raw_path)]
        decided: set[str] = set()
        first: Match | None = None
        for resource in self.resources:
            if resource.api.logical_id in decided:
                continue
            params = resource.match(parts)
            if params is None:
                continue
            route = resource.methods.get(method.upper()) or resource.methods.get("ANY")
            if route is not None:
                return Match(resource, route, params)
            decided.add(resource.api.logical_id)
            first = first or Match(resource, None, params)
        return first
