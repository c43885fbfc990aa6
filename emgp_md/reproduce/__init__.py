"""Reproduction of the paper's experiments: campaigns, reports, shipping of the trained models.

This is application code on top of the library: it runs the fine-tuning and pretraining campaigns
(:mod:`~emgp_md.reproduce.campaign`), writes the MD17, Figure 3 and Figure 4 reports
(:mod:`~emgp_md.reproduce.md17_report`, :mod:`~emgp_md.reproduce.figure3_report`,
:mod:`~emgp_md.reproduce.figure4`), the 500 K stability runs (:mod:`~emgp_md.reproduce.stability`)
and packs the best runs as shipped models (:mod:`~emgp_md.reproduce.shipping`). Nothing in the
library below imports it; the scripts in ``workflows/`` call it.
"""
