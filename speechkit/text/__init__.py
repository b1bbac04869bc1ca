"""Text: SentencePiece tokenizers (``tokenizer``) and English text normalisation (``normalize``)."""
