"""The weight-free baselines: ``sphere``, ``region-grow`` and ``random-walker``.

Each segments one bounded region per positive click on top of
:class:`~nfbench.models.baselines.click_regions.ClickRegionSession` and answers with the box that
changed, never a full-size mask.
"""
