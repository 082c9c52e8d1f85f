"""Text the seed how-to (cell [8]) prints for its Rockpool network's bounds."""

# Verbatim from ../shared/reference/rockpool-howto-constrained-opt.txt
HOWTO_PRINTED = """
{
    '0_LinearTorch': {'weight': -inf},
    '1_LIFTorch': {'alpha': 0.5, 'beta': 0.5, 'bias': -inf, 'threshold': -inf},
    '2_TorchResidual': {
        '0_LinearTorch': {'weight': -inf},
        '1_LIFTorch': {'alpha': 0.5, 'beta': 0.5, 'bias': -inf, 'threshold': -inf}
    },
    '3_LinearTorch': {'weight': -inf},
    '4_LIFTorch': {'tau_mem': 0.0, 'tau_syn': 0.0, 'bias': -inf, 'threshold': -inf}
}
{
    '0_LinearTorch': {'weight': inf},
    '1_LIFTorch': {'alpha': 1.0, 'beta': 1.0, 'bias': inf, 'threshold': inf},
    '2_TorchResidual': {
        '0_LinearTorch': {'weight': inf},
        '1_LIFTorch': {'alpha': 1.0, 'beta': 1.0, 'bias': inf, 'threshold': inf}
    },
    '3_LinearTorch': {'weight': inf},
    '4_LIFTorch': {'tau_mem': inf, 'tau_syn': 0.5, 'bias': inf, 'threshold': inf}
}
"""
