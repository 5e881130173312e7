"""The float32 twin of a model trained under a mixed-precision policy."""


def float32_copy(model):
    """`model` with a float32 policy and the same weights (for export).

    A model trained under a mixed policy computes in bfloat16/float16, which
    TFLite builtins cannot convert; its variables are float32 already, so a
    float32 twin with copied weights is the same model at full precision.
    """
    if model.dtype_policy.name == "float32":
        return model
    twin = type(model).from_config({**model.get_config(), "dtype": "float32"})
    twin.build(tuple(model.get_build_config()["input_shape"]))
    twin.set_weights(model.get_weights())
    return twin
