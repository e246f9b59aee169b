"""Live mode: audio streaming in, generated frames streaming out in real time (`trainer live`).

- ``features``: the causal, streamable audio timeline;
- ``sources``: where audio comes from (a file at real-time pace or flat out, stdin through ffmpeg, a device);
- ``scheduler``: snippets generated as audio arrives, degrading (fewer steps, then repeated frames) when behind;
- ``generator``: the sampler driven one snippet at a time;
- ``recorder``: the mp4 written as frames arrive, audio muxed at the end;
- ``server``: the local page (frames, counters, audio in sync).
"""
