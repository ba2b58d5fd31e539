"""Conversion of public checkpoints into this plugin's parameter names (logic of ``tools/convert_checkpoint.py``).

Every supported source is one :class:`~.sources.CheckpointSource` (``sources.py``): a table of
:class:`~.renames.Rename` rules (``renames.py``) from the source's parameter names to ours, the network of ours it
feeds and the YAML key that reads the converted file. ``converter.py`` reads, renames, checks and writes. The inverse
map (our names -> the source's, :func:`~.converter.to_source_naming`) is derived from the same table, so the two
directions cannot drift apart.

Layouts were checked against the original code; no tensor needs permuting:

* DCNv2 (C2-Matching, official FRFSR): ``conv_offset_mask`` outputs ``G * 27`` channels; the original code chunks
  them in three and concatenates the first two as offsets, i.e. channels ``[0, 18 G)`` are the offsets in
  (group, tap, (dy, dx)) order and ``[18 G, 27 G)`` the mask logits in (group, tap) order, exactly what
  :class:`~frfsr_plugin.ops.deform_conv.PreOffsetModulatedDeformConv` and ``torchvision.ops.deform_conv2d`` expect.
* DDF (official FRFSR): the channel branch's ``C * 9`` outputs are read channel-major (``(C, 3, 3)``) and the spatial
  branch gives the 9 taps row-major, as in :class:`~frfsr_plugin.archs.aggregation.DDFPack`.
"""
