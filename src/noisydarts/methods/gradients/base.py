"""The gradient-transform interface."""

from __future__ import annotations


class GradientTransform:
    """Changes the ``.grad`` of a supernet's architecture parameters in place, after the
    estimator has filled them and before the architecture optimizer steps."""

    def __call__(self, model) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Random state and the like, for the search checkpoint (exact resume)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Compose(GradientTransform):
    """Named transforms applied in order; empty, it changes nothing (and costs nothing)."""

    def __init__(self, transforms: dict[str, GradientTransform]):
        self.transforms = dict(transforms)

    def __call__(self, model) -> None:
        for transform in self.transforms.values():
            transform(model)

    def state_dict(self) -> dict:
        return {name: t.state_dict() for name, t in self.transforms.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, t in self.transforms.items():
            t.load_state_dict(state.get(name, {}))
