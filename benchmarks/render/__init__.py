"""Regenerate every GPU figure quoted in README.md and docs/*.md from the committed result files.

The project's rule is "numbers come from data": a GPU figure in the prose is written by a region kind of
this tool from a file under docs/results/, never typed in. In the Markdown, a generated region is

    <!-- results:NAME FOLDER [key=value ...] -->
    ...generated text...
    <!-- /results:NAME -->

NAME picks a row of ``KINDS`` (kinds.py), FOLDER is the result folder under docs/results/ (``h100``, ``h200x2``;
an H200 section is the same region with ``h200``). A region whose opening comment is followed by a line
break is a block (its own lines); otherwise it is inline, inside a sentence. Each block ends with a line
naming its source files and the command that made them (``stage=`` names another ``gpu_session.sh`` stage).

    python benchmarks/render_results.py           # rewrite the regions in place
    python benchmarks/render_results.py --check   # exit 1 on a stale region or a typed-in GPU figure

Adding a GPU: copy the $OUT of a ``gpu_session.sh`` run (file names as the stages write them) into
docs/results/<gpu>/ and add regions naming that folder. Adding a kind of result: one function from the
parsed data to the region's lines, in the module of its topic (study, timing, gate, suite, cpu, session),
and one row of ``KINDS`` naming it, the files it reads and the stage that writes each.

``--check`` also scans README.md and docs/*.md outside the regions for anything that looks like a
GPU figure (figures.py) and fails on it, unless ``ALLOWED`` names it as a non-GPU
number (a CPU figure, an option default, a formula constant). It reads files only: no torch.
"""
