"""The Q-Former: BERT-base layout with learned queries that cross-attend to image features."""

from lavis.models.qformer.bert_weights import load_bert_weights, load_qformer_tokenizer  # noqa: F401
from lavis.models.qformer.config import BERT_VOCAB_SIZE, QFORMER_VOCAB_SIZE, QFormerConfig  # noqa: F401
from lavis.models.qformer.model import QFormer, QFormerModel, QFormerOutput  # noqa: F401
