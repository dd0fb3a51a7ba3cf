"""A playground widget (ipywidgets): prompt, model/adapter choice, generation settings, base vs fine-tuned side by side.

The logic reads plain widget values, so pytest drives it with ``.value`` and ``.click()`` without a
browser; notebooks display it and call :meth:`Playground.generate` once, so that a headless run
shows output too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

import ipywidgets as widgets

from ftcourse.deploy import using_adapter
from ftcourse.generation import generate

__all__ = ["default_choices", "Playground"]


def default_choices(model) -> dict[str, Any]:
    """``base`` plus one entry per loaded adapter for a PeftModel (PEFT's unnamed ``default`` shows as ``fine-tuned``); just the model otherwise."""
    config = getattr(model, "peft_config", None)
    if config is None:
        return {"model": model}
    return {"base": None, **{"fine-tuned" if name == "default" else name: name for name in config}}


class Playground:
    """Generate with the reference (left: the base) and the selected model or adapter (right) for the same prompt.

    ``choices`` maps display names to adapter names of ``model`` (``None`` = adapters disabled) or to other
    loaded models sharing ``tokenizer`` (e.g. a merged export). Temperature 0 is greedy; above 0 it samples with ``seed``.
    """

    def __init__(self, model, tokenizer, choices: Mapping[str, Any] | None = None, system: str = "", prompt: str = "",
                 max_new_tokens: int = 48, reference: str | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.choices = dict(choices) if choices else default_choices(model)
        self.reference = reference or next(iter(self.choices))
        wide = widgets.Layout(width="98%")
        self.prompt = widgets.Textarea(value=prompt, placeholder="Type a message to the model…", description="Prompt", layout=widgets.Layout(width="98%", height="70px"))
        self.system = widgets.Text(value=system, placeholder="(optional) system prompt", description="System", layout=wide)
        options = list(self.choices)
        self.choice = widgets.Dropdown(options=options, value=options[-1], description="Compare")
        self.max_new_tokens = widgets.IntSlider(value=max_new_tokens, min=1, max=256, description="Max tokens")
        self.temperature = widgets.FloatSlider(value=0.0, min=0.0, max=1.5, step=0.05, description="Temperature")
        self.seed = widgets.IntText(value=42, description="Seed", layout=widgets.Layout(width="160px"))
        self.button = widgets.Button(description="Generate", button_style="primary", icon="play")
        self.outputs = {side: widgets.Textarea(disabled=True, layout=widgets.Layout(width="98%", height="140px")) for side in ("left", "right")}
        self.titles = {side: widgets.HTML() for side in ("left", "right")}
        self.status = widgets.HTML()
        self.button.on_click(lambda _button: self.generate())
        panes = [widgets.VBox([self.titles[s], self.outputs[s]], layout=widgets.Layout(width="50%")) for s in ("left", "right")]
        self.widget = widgets.VBox([
            self.prompt, self.system,
            widgets.HBox([self.choice, self.max_new_tokens]), widgets.HBox([self.temperature, self.seed, self.button]),
            widgets.HBox(panes), self.status,
        ])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    @contextlib.contextmanager
    def _using(self, name: str) -> Iterator:
        choice = self.choices[name]
        if choice is None or isinstance(choice, str):
            if not hasattr(self.model, "peft_config"):  # a plain model has no adapters to switch
                yield self.model
                return
            with using_adapter(self.model, choice) as model:
                yield model
        else:
            yield choice

    def generate(self) -> dict[str, str]:
        """Answer the prompt with the reference and the selected choice; fills both panes and returns ``{name: answer}``."""
        text = self.prompt.value.strip()
        if not text:
            self.status.value = "<b>Type a prompt first.</b>"
            return {}
        messages = ([{"role": "system", "content": self.system.value}] if self.system.value.strip() else []) + [{"role": "user", "content": text}]
        settings = dict(max_new_tokens=self.max_new_tokens.value, temperature=self.temperature.value, seed=self.seed.value, progress=False)
        start = time.perf_counter()
        self.status.value = "Generating…"
        answers = {}
        for side, name in (("left", self.reference), ("right", self.choice.value)):
            if name not in answers:
                with self._using(name) as model:
                    answers[name] = generate(model, self.tokenizer, [messages], **settings)[0]
            self.titles[side].value = f"<b>{name}</b>"
            self.outputs[side].value = answers[name]
        mode = "greedy" if self.temperature.value == 0 else f"temperature {self.temperature.value:g}, seed {self.seed.value}"
        self.status.value = f"{mode}; {time.perf_counter() - start:.1f} s"
        return answers
