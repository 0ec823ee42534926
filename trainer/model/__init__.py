"""The Otter model: ``configuration_otter`` (its config), ``modeling_otter`` (the model; build, save,
load) and its parts: vision encoders, perceiver resampler, gated cross-attention, LM wrapping, loss."""
