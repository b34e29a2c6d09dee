# GradSamp server mode: one round in four is skipped (rounds 3, 7, 11, 15, 19 of 20): no client
# is contacted, the global model moves by a Gaussian sample fitted to the last global update.
_base_ = ['./fedavg_rotated_digits.py']
fl = dict(gradsamp=dict(mode='server', every=4, warmup=2))
