"""Where a corpus's bytes come from: files, folders, archives, Hugging Face datasets; streamed in one pass."""
