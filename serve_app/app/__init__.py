"""The application: the builder that assembles the Serve graph from typed `AppArgs`
(builder.py), the ingress deployment with its handle API (ingress.py), the HTTP app each
ingress replica builds for itself (http_app.py), the args and the environment settings
layered under them (args.py, settings.py), and the Application `serve build` takes
(published.py: `serve_app.app.published:app`)."""
