"""Generators: what turns the previous frame into the next one. See ``vj.gen.base`` for the contract."""

# name -> ("module:Class", one line for --help). Kept here, free of heavy imports, so `vj --help` stays instant.
GENERATORS: dict[str, tuple[str, str]] = {
    "sketch": ("vj.gen.sketch:SketchGenerator", "procedural dream on the CPU, no model needed (default)"),
    "decay": ("vj.gen.decay:DecayGenerator", "diagnostic: every frame fades toward grey, to watch sparks rescue it"),
    "replay": ("vj.dreams.replay:ReplayGenerator", "the best stored dreams, morphing into each other"),
    "lcm": ("vj.gen.lcm:LcmGenerator", "Latent Consistency Model img2img (needs a model; see vj model fetch)"),
}
