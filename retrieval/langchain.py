"""The hybrid search as a LangChain retriever (``langchain_core.retrievers.BaseRetriever``)."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from retrieval.search import HybridSearcher, Method


class PlaybookRetriever(BaseRetriever):
    """Vetted playbooks for a query, one ``Document`` per playbook (its best chunk), with
    the playbook id, calibrated similarity and ranks in the metadata."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: HybridSearcher
    k: int = 5
    method: Method = Method.HYBRID

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = self.searcher.search(query, self.k, self.method)
        docs = []
        for rank, hit in enumerate(hits, 1):
            meta: dict[str, Any] = {
                **hit.metadata,
                "playbook_id": hit.doc_id,
                "similarity": hit.similarity,
                "cosine": hit.cosine,
                "rank": rank,
                "dense_rank": hit.dense_rank,
                "lexical_rank": hit.lexical_rank,
            }
            docs.append(Document(page_content=hit.text, metadata=meta, id=hit.doc_id))
        return docs
