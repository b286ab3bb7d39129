"""Variant specs of the experiment runners: 'label:--flag=value --flag=value' → extra training flags."""
from absl import app


def parse_variant(spec: str, allow_empty: bool = False) -> tuple[str, list[str]]:
    """'label:--a=1 --b=2' → ('label', ['--a=1', '--b=2']); 'label:' is allowed (no flags) with allow_empty."""
    label, sep, rest = spec.partition(":")
    extra = rest.split()
    if (not sep or not label or "." in label or (not extra and not allow_empty)
            or not all(f.startswith("--") for f in extra)):
        raise app.UsageError(f"--variant={spec!r}: expected label:--flag=value[ --flag=value], label without dots")
    return label, extra
