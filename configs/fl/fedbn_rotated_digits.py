# FedBN: FedAvg on the server, every client keeps its norm layers (DigitsCNN's GroupNorms:
# affine parameters) local. The global model's (averaged) norm layers are what the held-out
# domain is evaluated with.
_base_ = ['./fedavg_rotated_digits.py']
fl = dict(strategy=dict(type='FedBN'))
