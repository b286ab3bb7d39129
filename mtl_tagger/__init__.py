"""mtl_tagger: multi-task attribute-value extraction (BiLSTM-CRF with a coupling loss)."""
