"""Choices several modules share, free of TensorFlow (the CLIs check them before it loads)."""

SPLITS = ("test", "val", "train")
NORMS = ("inf", "2")  # the norms of the eps-ball attacks; fmn also takes "1"
NORM_ALIASES = {
    "inf": "inf",
    "linf": "inf",
    "l_inf": "inf",
    "2": "2",
    "l2": "2",
    "1": "1",
    "l1": "1",
}
NORM_EPS_MAX = {"inf": 1.0, "2": None, "1": None}  # largest eps, pixel scale (None: unbounded)


def norm_name(norm) -> str | None:
    """The canonical name ("inf", "2" or "1") of a norm given as a name, alias, number (np.inf,
    2, 1) or an object with a `name`; None when unknown."""
    raw = getattr(norm, "name", norm)
    key = "inf" if isinstance(raw, float) and raw == float("inf") else str(raw).lower()
    return NORM_ALIASES.get(key)


LOSSES = ("ce", "margin", "dlr", "ce_t")  # tfadv.attacks.losses.LOSSES
LOSS_ALIASES = {"cross_entropy": "ce", "cw": "margin", "ce_temperature": "ce_t"}
LOSS_ON = ("logits", "probabilities")
TARGETS = ("least_likely", "least_likely_top5", "random")  # or a class id
JIT_CHOICES = ("auto", "true", "false")
DISTRIBUTIONS = ("default", "mirrored", "multi_worker")
TEST_NOISES = ("random_sign", "gaussian")
TFLITE_PRECISIONS = ("float32", "float16", "int8")
