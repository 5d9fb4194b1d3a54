"""Comparing several trained GRADIENDs of one base model (D §6): top-k weights, similarity matrices
(ungrouped, per layer, per component) over base-global indices, cross-encoding matrices. Pure method
code (no store, no Prefect); plots_compare draws the stored tables.

Modules: layout (one index space, PartVectors), groups (layer / component of a tensor name), measures
(pairwise formulas), similarity (matrices as tidy tables), topk (top-k tables, Venn regions),
cross_encoding (encoding tables), results (everything in one call, the summary, parquet files).
"""
from gradiend_core.compare.cross_encoding import (anchor_aligned_matrix, cross_encoding_matrix, encoding_table,
                                                  pairwise_encoding_matrix)
from gradiend_core.compare.groups import component_of, layer_of
from gradiend_core.compare.layout import Layout, PartVectors, common_layout, part_vectors
from gradiend_core.compare.measures import MEASURES
from gradiend_core.compare.results import (CompareConfig, Comparison, compare_gradiends, read_comparison,
                                           write_comparison)
from gradiend_core.compare.similarity import as_matrix, grouped_similarity, similarity_matrix
from gradiend_core.compare.topk import topk_sets, topk_weights, venn_regions

__all__ = ["Layout", "PartVectors", "common_layout", "part_vectors", "component_of", "layer_of", "MEASURES",
           "similarity_matrix", "grouped_similarity", "as_matrix", "topk_weights", "topk_sets", "venn_regions",
           "encoding_table", "cross_encoding_matrix", "pairwise_encoding_matrix", "anchor_aligned_matrix",
           "CompareConfig", "Comparison", "compare_gradiends", "write_comparison", "read_comparison"]
