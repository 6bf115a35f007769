"""HTTP surfaces, one module each; all of them call `serve_app.synthesis_service.SynthesisService`."""
