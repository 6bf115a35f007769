"""C2PA Content Credentials on outputs (the kept `c2pa-python` library): a manifest signed
with the operator's certificate saying the audio is AI-generated (c2pa.actions, digital
source type trainedAlgorithmicMedia), by which generator, model kind and request, embedded in
every format the library can embed into (wav, mp3, flac); read back and validated with the
library's own Reader. `development` makes a test CA and leaf for the CPU demo and tests.
Plain Python, no Ray: the AudioProcessor runs it (docs/platform.md, "Output marking")."""

from .reading import read_credentials
from .signing import C2PA_FORMATS, ContentSigner, manifest_definition

__all__ = ["C2PA_FORMATS", "ContentSigner", "manifest_definition", "read_credentials"]
