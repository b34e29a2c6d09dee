# ERM + SWAD on StyledGlyphs: the ERM config's training, with SWAD's weight averaging
# (dgsamp/engine/swad_hook.py). Validating every epoch gives SWAD its 8 segments (the window
# rule reads training-domain accuracy only); the reported model is the averaged one, validated
# after training (tools/collect_results.py shows the row as ERM+SWAD and uses that evaluation).
#   python tools/train.py configs/dg/swad_styled_glyphs.py
_base_ = ['./erm_styled_glyphs.py']
train_cfg = dict(val_interval=1)
custom_hooks = [dict(type='SWADHook', metric='acc/train_domains', n_converge=3, n_tolerance=6,
                     tolerance=1.0)]
