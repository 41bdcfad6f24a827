"""Static checks of Amazon States Language definitions and of a whole stack.

``lint_definition`` finds what the Step Functions service would reject at CreateStateMachine (and a few
things it accepts that are always mistakes, such as unreachable states), then asks moto's ANTLR parser (the
engine the local runtime executes with) whether it can parse the definition. ``lint_stack`` lints every state
machine of a ``StackModel`` and runs cfn-lint over the translated CloudFormation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from local.model import StackModel

_STATE_TYPES = {"Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map"}
_NO_TRANSITION = {"Choice", "Succeed", "Fail"}  # these never carry Next/End
# Fields that exist only in JSONPath states, and only in JSONata states (Assign works in both).
_JSONPATH_ONLY = (
    "InputPath",
    "OutputPath",
    "Parameters",
    "ResultPath",
    "ResultSelector",
    "ItemsPath",
    "SecondsPath",
    "TimestampPath",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "ErrorPath",
    "CausePath",
    "MaxConcurrencyPath",
    "ToleratedFailureCountPath",
    "ToleratedFailurePercentagePath",
)
_JSONATA_ONLY = ("Arguments", "Output", "Items")
# Retrier field -> (must be an integer, minimum)
_RETRY_NUMBERS: dict[str, tuple[bool, float]] = {
    "IntervalSeconds": (True, 1),
    "MaxAttempts": (True, 0),
    "BackoffRate": (False, 1.0),
    "MaxDelaySeconds": (True, 1),
}


def lint_definition(definition: str | dict[str, Any]) -> list[str]:
    """Problems found in an ASL definition (JSON text or already parsed), one line each; [] when clean."""
    if isinstance(definition, str):
        try:
            document = json.loads(definition)
        except ValueError as exc:
            return [f"definition is not valid JSON: {exc}"]
        text = definition
    else:
        document, text = definition, json.dumps(definition)
    if not isinstance(document, dict):
        return ["definition must be a JSON object"]
    problems = _check_machine(document, "", document.get("QueryLanguage", "JSONPath"))
    if not problems:
        # Only worth asking the engine once the structure is sound: its messages are grammar-level.
        problems.extend(_moto_parse_problems(text))
    return problems


def _moto_parse_problems(text: str) -> list[str]:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser, ASLParserException

    try:
        AmazonStateLanguageParser.parse(text)
    except ASLParserException as exc:
        return [f"local engine cannot parse the definition: {error}" for error in exc.errors] or [
            "local engine cannot parse the definition"
        ]
    except Exception as exc:  # the preprocessor raises plain exceptions for semantic problems
        return [f"local engine rejects the definition: {type(exc).__name__}: {exc}"]
    return []


def _check_machine(machine: dict[str, Any], where: str, inherited_language: str) -> list[str]:
    """Check one state machine or branch/iterator (``where`` prefixes its messages)."""
    problems: list[str] = []
    language = machine.get("QueryLanguage", inherited_language)
    if language not in ("JSONPath", "JSONata"):
        problems.append(f"{where}QueryLanguage must be JSONPath or JSONata, not {language!r}")
        language = "JSONPath"
    states = machine.get("States")
    if not isinstance(states, dict) or not states:
        return [*problems, f"{where}States must be a non-empty object"]
    start = machine.get("StartAt")
    if not isinstance(start, str):
        problems.append(f"{where}StartAt is missing")
    elif start not in states:
        problems.append(f"{where}StartAt {start!r} is not a state")
    for name, state in states.items():
        if not isinstance(state, dict):
            problems.append(f"{where}state {name!r} must be an object")
            continue
        problems.extend(_check_state(name, state, states, f"{where}state {name!r}: ", language))
    if isinstance(start, str) and start in states:
        for name in states:
            if name not in _reachable(start, states):
                problems.append(f"{where}state {name!r} is unreachable from StartAt")
    return problems


def _transitions(state: dict[str, Any]) -> list[str]:
    targets = [state.get("Next"), state.get("Default")]
    targets += [choice.get("Next") for choice in state.get("Choices") or [] if isinstance(choice, dict)]
    targets += [catcher.get("Next") for catcher in state.get("Catch") or [] if isinstance(catcher, dict)]
    return [t for t in targets if isinstance(t, str)]


def _reachable(start: str, states: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    pending = [start]
    while pending:
        name = pending.pop()
        if name in seen or not isinstance(states.get(name), dict):
            continue
        seen.add(name)
        pending.extend(_transitions(states[name]))
    return seen


def _check_state(
    name: str, state: dict[str, Any], states: dict[str, Any], where: str, inherited_language: str
) -> list[str]:
    problems: list[str] = []
    kind = state.get("Type")
    if kind not in _STATE_TYPES:
        return [f"{where}Type must be one of {', '.join(sorted(_STATE_TYPES))}, not {kind!r}"]
    language = state.get("QueryLanguage", inherited_language)
    if inherited_language == "JSONata" and language == "JSONPath":
        problems.append(f"{where}a JSONPath state cannot sit in a JSONata state machine")
    problems.extend(_check_language_fields(state, where, language))
    # Transitions: every non-terminal state needs exactly one of Next / End.
    if kind in _NO_TRANSITION:
        for field in ("Next", "End"):
            if field in state:
                problems.append(f"{where}a {kind} state cannot have {field}")
    elif ("Next" in state) == (state.get("End") is True):
        problems.append(f"{where}needs exactly one of Next or End: true")
    for target in _transitions(state):
        if target not in states:
            problems.append(f"{where}transition to {target!r}, which is not a state")
    if kind == "Task" and not isinstance(state.get("Resource"), str):
        problems.append(f"{where}a Task needs a Resource")
    if kind == "Choice":
        problems.extend(_check_choice(state, where, language))
    if kind in ("Task", "Parallel", "Map"):
        problems.extend(_check_retry(state.get("Retry"), where))
        problems.extend(_check_catch(state.get("Catch"), where, states, language))
    elif "Retry" in state or "Catch" in state:
        problems.append(f"{where}only Task, Parallel and Map states can have Retry/Catch")
    if kind == "Parallel":
        branches = state.get("Branches")
        if not isinstance(branches, list) or not branches:
            problems.append(f"{where}a Parallel state needs a non-empty Branches list")
        else:
            for index, branch in enumerate(branches):
                inner = f"{where}branch {index}: "
                if isinstance(branch, dict):
                    problems.extend(_check_machine(branch, inner, language))
                else:
                    problems.append(f"{inner}must be an object")
    if kind == "Map":
        processor = state.get("ItemProcessor", state.get("Iterator"))
        if not isinstance(processor, dict):
            problems.append(f"{where}a Map state needs an ItemProcessor (or Iterator)")
        else:
            problems.extend(_check_machine(processor, f"{where}ItemProcessor: ", language))
    return problems


def _check_language_fields(state: dict[str, Any], where: str, language: str) -> list[str]:
    forbidden = _JSONPATH_ONLY if language == "JSONata" else _JSONATA_ONLY
    return [f"{where}{field} is not allowed in a {language} state" for field in forbidden if field in state]


def _check_choice(state: dict[str, Any], where: str, language: str) -> list[str]:
    choices = state.get("Choices")
    if not isinstance(choices, list) or not choices:
        return [f"{where}a Choice state needs a non-empty Choices list"]
    problems = []
    for index, rule in enumerate(choices):
        if not isinstance(rule, dict) or not isinstance(rule.get("Next"), str):
            problems.append(f"{where}Choices[{index}] needs a Next")
            continue
        if language == "JSONata" and "Condition" not in rule:
            problems.append(f"{where}Choices[{index}] needs a Condition in a JSONata state")
        if language == "JSONPath" and "Condition" in rule:
            problems.append(f"{where}Choices[{index}]: Condition is not allowed in a JSONPath state")
    return problems


def _check_retry(retriers: Any, where: str) -> list[str]:
    if retriers is None:
        return []
    if not isinstance(retriers, list):
        return [f"{where}Retry must be a list"]
    problems = _check_error_equals(retriers, f"{where}Retry")
    for index, retrier in enumerate(retriers):
        if not isinstance(retrier, dict):
            continue
        for field, (integer, minimum) in _RETRY_NUMBERS.items():
            value = retrier.get(field)
            if value is None:
                continue
            wanted = (int,) if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, wanted) or value < minimum:
                kind = "an integer" if integer else "a number"
                problems.append(f"{where}Retry[{index}].{field} must be {kind} >= {minimum:g}, not {value!r}")
        jitter = retrier.get("JitterStrategy")
        if jitter is not None and jitter not in ("FULL", "NONE"):
            problems.append(f"{where}Retry[{index}].JitterStrategy must be FULL or NONE, not {jitter!r}")
    return problems


def _check_catch(catchers: Any, where: str, states: dict[str, Any], language: str) -> list[str]:
    if catchers is None:
        return []
    if not isinstance(catchers, list):
        return [f"{where}Catch must be a list"]
    problems = _check_error_equals(catchers, f"{where}Catch")
    for index, catcher in enumerate(catchers):
        if not isinstance(catcher, dict):
            continue
        if not isinstance(catcher.get("Next"), str):
            problems.append(f"{where}Catch[{index}] needs a Next")
        if language == "JSONata" and "ResultPath" in catcher:
            problems.append(f"{where}Catch[{index}].ResultPath is not allowed in a JSONata state")
        if language == "JSONPath" and "Output" in catcher:
            problems.append(f"{where}Catch[{index}].Output is not allowed in a JSONPath state")
    return problems


def _check_error_equals(handlers: list[Any], where: str) -> list[str]:
    problems = []
    for index, handler in enumerate(handlers):
        if not isinstance(handler, dict):
            problems.append(f"{where}[{index}] must be an object")
            continue
        errors = handler.get("ErrorEquals")
        if not isinstance(errors, list) or not errors or not all(isinstance(e, str) for e in errors):
            problems.append(f"{where}[{index}].ErrorEquals must be a non-empty list of error names")
            continue
        if "States.ALL" in errors:
            if len(errors) > 1:
                problems.append(f"{where}[{index}]: States.ALL must appear alone in ErrorEquals")
            if index != len(handlers) - 1:
                problems.append(f"{where}[{index}]: the States.ALL handler must be the last one")
    return problems


# -- the stack --


def lint_stack(model: StackModel) -> list[str]:
    """ASL problems of every state machine plus cfn-lint findings on the translated template."""
    problems = [
        f"state machine {spec.logical_id}: {problem}"
        for spec in model.state_machines.values()
        for problem in lint_definition(spec.definition)
    ]
    problems.extend(cfn_lint_problems(model))
    return problems


def cfn_lint_problems(model: StackModel) -> list[str]:
    """cfn-lint over what the SAM transform produced, with each state machine's definition inlined (cfn-lint
    only checks ASL it can see: an inline DefinitionString, E3601)."""
    from cfnlint.api import ManualArgs, lint

    from local.template_loader import translate_template

    template = translate_template(
        model.template_path,
        parameter_overrides=model.parameters,
        region=model.region,
        account_id=model.account_id,
        stack_name=model.stack_name,
    )
    definitions = {spec.logical_id: spec.definition for spec in model.state_machines.values()}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::StepFunctions::StateMachine" or logical_id not in definitions:
            continue
        props = resource.setdefault("Properties", {})
        for key in ("DefinitionS3Location", "Definition", "DefinitionSubstitutions"):
            props.pop(key, None)
        props["DefinitionString"] = definitions[logical_id]
    matches = lint(json.dumps(template), config=ManualArgs(regions=[model.region]))
    return [_format_match(match, model.template_path) for match in matches]


def _format_match(match: Any, template_path: Path) -> str:
    rule = getattr(match.rule, "id", "?")
    path = "/".join(str(p) for p in getattr(match, "path", []) or [])
    return f"cfn-lint {rule} ({template_path.name}, translated: {path}): {match.message}"
