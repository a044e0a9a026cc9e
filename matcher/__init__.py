"""Request understanding (language, category, time, budget), embeddings, the expert index and ranking."""
