"""Building blocks of the Otter model: vision adapters, perceiver resampler, gated cross-attention."""
