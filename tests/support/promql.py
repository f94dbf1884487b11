"""What a PromQL expression reads: its metric names and the labels it matches and groups by.

Not a PromQL parser: a tokenizer that is enough to check dashboards and alert rules against the
metrics a gateway exports. Strings are blanked first (so ``route=~"/v1/.*"`` hides nothing), each
``{...}`` selector is read for its label names and tied to the metric name before it, range and
subquery brackets and grouping clauses (``by``/``without``/``on``/``ignoring``/``group_left``/
``group_right`` with their label lists) are lifted out, and what remains is tokenized: an
identifier followed by ``(`` is a function or an aggregation, keywords and numbers (durations
included) are skipped, and every other identifier is a metric name.

Grafana's variables (``$job``, ``${job}``, ``$__rate_interval``) are replaced by
:func:`with_grafana_variables_substituted` with values that keep the expression valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^{}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_TOKEN = re.compile(
    r"(?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:[a-zA-Z]+\d*)*)"
    r"|(?P<variable>\$\{?[A-Za-z_]\w*(?::\w+)?\}?)"
    r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)"
    r"|(?P<other>\S)"
)
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "atan2",
        "inf",
        "nan",
        "start",
        "end",
    }
)
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Selector:
    """One vector selector: a metric name and the label names its matchers use."""

    metric: str
    labels: frozenset[str]


@dataclass
class Reads:
    """What one expression reads."""

    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)
    """Label names of its grouping and matching clauses (``by (...)``, ``on (...)``, ...)."""

    @property
    def metrics(self) -> set[str]:
        """Every metric name the expression reads."""
        return {selector.metric for selector in self.selectors}


def reads(expr: str) -> Reads:
    """The metric names, matcher labels and grouping labels of a PromQL expression."""
    found = Reads()
    text = _STRING.sub('""', expr)

    def selector(match: re.Match[str]) -> str:
        labels = frozenset(_MATCHER_LABEL.findall(match.group(2)))
        name = match.group(1)
        if name and name.lower() not in _KEYWORDS:
            found.selectors.append(Selector(name, labels))
            return " "
        # {__name__="..."} would name the metric in a string: these checks cannot follow it.
        if "__name__" in labels:
            raise ValueError(f"selector by __name__ is not supported: {expr!r}")
        return (name or "") + " "

    text = _SELECTOR.sub(selector, text)
    while True:  # subqueries nest brackets in brackets
        lifted = _BRACKETS.sub(" ", text)
        if lifted == text:
            break
        text = lifted

    def grouping(match: re.Match[str]) -> str:
        found.grouping.update(label.strip() for label in match.group(2).split(",") if label.strip())
        return " "

    text = _GROUPING.sub(grouping, text)
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(text)]
    for index, (kind, value) in enumerate(tokens):
        if kind != "name" or value.lower() in _KEYWORDS:  # PromQL keywords ignore case
            continue
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if following == "(":
            continue  # a function or an aggregation
        found.selectors.append(Selector(value, frozenset()))
    return found


def variable_query_selector(query: str) -> tuple[str | None, str | None]:
    """A Grafana Prometheus variable query's selector and the label it lists.

    ``label_values(selector, label)`` → (selector, label); ``label_values(label)`` → (None, label);
    any other query is a PromQL expression → (query, None).
    """
    match = _LABEL_VALUES.match(query)
    if match is not None:
        return match.group(1), match.group(2)
    bare = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", query)
    if bare is not None:
        return None, bare.group(1)
    return query, None


# Values that keep an expression valid wherever Grafana would put the variable.
_DURATION_VARIABLES = {"rate_interval": "1m", "interval": "15s", "range": "1h"}
_BUILTIN_VARIABLE = re.compile(r"\$\{?__(\w+)\}?")
_ANY_VARIABLE = re.compile(r"\$\{?[A-Za-z_]\w*(?::\w+)?\}?")


def with_grafana_variables_substituted(expr: str) -> str:
    """``expr`` with Grafana's variables replaced: durations by durations, the rest by ``.*``.

    Dashboard variables only appear inside regex matchers (``instance=~"$instance"``), where
    ``.*`` matches everything, as a multi-value "All" does.
    """

    def duration(match: re.Match[str]) -> str:
        if match.group(1) not in _DURATION_VARIABLES:
            raise ValueError(f"unknown Grafana variable {match.group()} in {expr!r}")
        return _DURATION_VARIABLES[match.group(1)]

    return _ANY_VARIABLE.sub(".*", _BUILTIN_VARIABLE.sub(duration, expr))
