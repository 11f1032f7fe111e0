"""Loading the model for a command: the download bar, the -v line, one function every command calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imgclass.cli.environment import Environment
from imgclass.cli.options import pop_load_options, pop_models

if TYPE_CHECKING:
    from imgclass.classifier import Classifier
    from imgclass.cli.terminal import DownloadBar


def download_bar(env: Environment) -> DownloadBar | None:
    """A download progress bar on a terminal (never with --quiet), else nothing."""
    if not env.progress:
        return None
    from imgclass.cli.terminal import DownloadBar

    return DownloadBar()


def load_classifier(env: Environment, values: dict[str, Any], background: bool = True) -> Classifier:
    """Take the model options out of `values`, load the classifier, and say what was chosen with -v.

    --model given several times (where the command has --weights) loads an ensemble.
    """
    import imgclass

    if "weights" in values:
        models, weights = pop_models(values)
        if len(models) > 1:
            _, options = pop_load_options(values)
            classifier = imgclass.load_ensemble(models, weights, options=options, download_progress=download_bar(env),
                                                background=background)  # fmt: skip
            if env.verbose:
                for info in classifier.info["members"]:
                    env.note(describe_model(info))
            warn_once(env, classifier)
            return classifier
        if weights is not None:
            from imgclass.errors import UsageError

            raise UsageError("--weights needs --model given several times (an ensemble)")
        values["model"] = models[0] if models else None
    spec, options = pop_load_options(values)
    classifier = imgclass.load(spec, options=options, download_progress=download_bar(env), background=background)
    if env.verbose:
        env.note(describe_model(classifier.info))
    warn_once(env, classifier)
    return classifier


def warn_once(env: Environment, classifier: Classifier) -> None:
    """The library's warnings about a classifier, once per run, on stderr (also when it is not a terminal;
    not with --quiet, which asks for nothing but errors)."""
    from imgclass._util.text import printable

    for member in classifier.members:
        remedy = "" if member.preset_evidence else (
            f"; pass --preset NAME, put a sidecar {printable(member.path.with_suffix('.json').name)} beside the "
            f"model, or run: imgclass models doctor {printable(member.name)}"
        )  # fmt: skip
        for warning in member.warnings:
            env.note(f"warning: {warning}{remedy}")


def describe_model(info: dict[str, Any]) -> str:
    sig = info["signature"]
    height, width = info["input_size"]
    background = " (background at 0)" if info["background_class"] else ""
    return (
        f"model {info['name']} ({info['path']}); preset {info['preset']} [{info['preset_source']}]; "
        f"input {sig['layout']} {height}x{width} {sig['dtype']}; {info['classes']} classes{background}; "
        f"labels {info['labels']}; scores {_scores(info)}; providers {', '.join(info['providers'])}"
    )


def _scores(info: dict[str, Any]) -> str:
    """`sigmoid (multi-label, applied: none) [detected (Sigmoid at the output)]`: what -v says about scores."""
    kind = "multi-label, independent" if info["multi_label"] else "single-label"
    return f"{info['activation']} ({kind}; applied: {info['activation_applied']}) [{info['activation_source']}]"
