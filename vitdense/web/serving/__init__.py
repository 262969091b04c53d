"""The public demo's Gradio-free serving guards, unit-tested without a server: the visitors'
result store under one byte budget (``sessions``), the work estimate and gate (``workbudget``),
validation of untrusted API values and uploads (``validate``), temporary-file cleanup
(``tempfiles``) and ZeroGPU wrapping (``zerogpu``). Nothing here imports Gradio."""
