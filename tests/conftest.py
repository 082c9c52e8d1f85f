import jax

# Tests compare float64 against NumPy; float32 cases pass dtypes explicitly.
jax.config.update("jax_enable_x64", True)
