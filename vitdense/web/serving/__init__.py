"""The public demo's Gradio-free serving guards, unit-tested without a server: the limits resolved
once (``limits``), the job gate that enforces them (``gate``), the visitors' result store under one
byte budget (``results``; ``sessions`` is its old name), the work estimate in units and seconds,
the fair work gate and the click limiter (``workbudget``), validation of untrusted API values and
uploads (``validate``), temporary-file cleanup (``tempfiles``) and ZeroGPU wrapping (``zerogpu``).
Nothing here imports Gradio."""
