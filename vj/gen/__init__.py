"""Generators: what turns the previous frame into the next one. See ``vj.gen.base`` for the contract."""

# name -> ("module:Class", one line for --help). Kept here, free of heavy imports, so `vj --help` stays instant.
GENERATORS: dict[str, tuple[str, str]] = {
    "dream": ("vj.gen.dream:DreamGenerator", "feedback fractals shaped by the prompt, on the CPU, no model (default)"),
    "sketch": ("vj.gen.sketch:SketchGenerator", "marbled ink on the CPU: the lightest, and the fallback"),
    "decay": ("vj.gen.decay:DecayGenerator", "diagnostic: every frame fades toward grey, to watch sparks rescue it"),
    "replay": ("vj.dreams.replay:ReplayGenerator", "the best stored dreams, morphing into each other"),
    "lcm": ("vj.gen.lcm:LcmGenerator", "Latent Consistency Model img2img (needs a model; see vj model fetch)"),
    "remote": ("vj.gen.remote:RemoteGenerator", "frames from a generator node on another machine (vj node; --node)"),
}
