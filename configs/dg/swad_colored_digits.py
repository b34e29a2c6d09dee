# ERM + SWAD on ColoredDigits: the shipped ERM config's 30 epochs, validated every 2 epochs so
# that SWAD's window rule (training-domain accuracy only) has 15 segments; the reported model is
# the averaged one, validated after training (the ERM+SWAD row of tools/collect_results.py).
#   python tools/train.py configs/dg/swad_colored_digits.py
_base_ = ['./erm_colored_digits.py']
train_cfg = dict(val_interval=2)
custom_hooks = [dict(type='SWADHook', metric='acc/train_domains', n_converge=3, n_tolerance=6,
                     tolerance=1.0)]
