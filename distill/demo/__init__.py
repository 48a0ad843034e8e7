"""`distill demo`: a local web page (Gradio, the optional `demo` extra) that runs the teacher, the
student and the GAN side by side, or a translator on uploaded images.

  folders.py  which folder is which (pipeline, GAN generator, run folder, translator checkpoint)
  models.py   the loaded models, the caps on a request, one timed call per model (the bench's timer)
  app.py      the Gradio pages (imports gradio; nothing else here does)
"""
