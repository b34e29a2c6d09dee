# FedProx (Flower's strategy): clients add the gradient of (mu/2)||w - w_global||^2.
_base_ = ['./fedavg_rotated_digits.py']
fl = dict(strategy=dict(type='FedProx', proximal_mu=0.01))
