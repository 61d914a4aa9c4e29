"""Model providers: the wire-independent types, the ``Provider`` interface, and the one wrapper.

The gateway builds a ``ProviderClient`` per configured provider and calls ``generate``, ``stream``
and ``embed`` on it; adapters (OpenAI-compatible, Anthropic, simulated) only speak their protocol.
"""

from charter.providers.anthropic import AnthropicProvider
from charter.providers.base import ChatStream, ClientSettings, Provider, ProviderClient
from charter.providers.openai_compat import OpenAICompatProvider
from charter.providers.simulated import SimulatedBehaviour, SimulatedProvider
from charter.providers.types import (
    SSE_DONE,
    ChatRequest,
    ChatResponse,
    ContentPart,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    StreamChunk,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)

__all__ = [
    "SSE_DONE",
    "AnthropicProvider",
    "ChatRequest",
    "ChatResponse",
    "ChatStream",
    "ClientSettings",
    "ContentPart",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "Message",
    "OpenAICompatProvider",
    "Provider",
    "ProviderClient",
    "SimulatedBehaviour",
    "SimulatedProvider",
    "StreamChunk",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "Usage",
]
