"""JSON encoding of number arrays that keeps NaN and +/-Inf.

JSON has no non-finite numbers, and `json.dumps` would emit the invalid
tokens `NaN`/`Infinity` that browsers reject. Non-finite values become the
strings "NaN", "Infinity" and "-Infinity" (decoded by frontend/model.js).
"""

import numpy as np

NAN = "NaN"
POS_INF = "Infinity"
NEG_INF = "-Infinity"


def encode_array(values):
    """Converts a numeric numpy array to nested lists, non-finite as strings."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return values.tolist()
    values = values.astype(np.float64, copy=False)
    finite = np.isfinite(values)
    if finite.all():
        return values.tolist()
    encoded = values.astype(object)
    encoded[np.isnan(values)] = NAN
    encoded[values == np.inf] = POS_INF
    encoded[values == -np.inf] = NEG_INF
    return encoded.tolist()


def decode_array(encoded):
    """Inverse of `encode_array` (for tests and Python clients)."""
    table = {NAN: np.nan, POS_INF: np.inf, NEG_INF: -np.inf}

    def convert(item):
        if isinstance(item, list):
            return [convert(x) for x in item]
        if isinstance(item, str):
            return table[item]
        return item

    return np.asarray(convert(encoded), dtype=np.float64)
