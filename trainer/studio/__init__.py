"""`trainer studio`: a local page to audition models on a folder of songs (issue 25).

:mod:`trainer.studio.catalog` lists what the page may use (the audio folder's files, the shipped models, the runs
and their checkpoints) and refuses everything else; :mod:`trainer.studio.worker` generates in a background thread
(the model's video, the teacher's, the timeline's curves and the per-file metrics of ``trainer eval --audio-dir``);
:mod:`trainer.studio.server` serves the page (:mod:`trainer.studio.page`) on the live page's HTTP code.
"""
