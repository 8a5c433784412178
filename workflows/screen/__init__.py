"""AdsorbML-style adsorption screening: placements, batched ML relaxation, anomaly detection,
verification with a reference calculator, success@k, resumable and scaled out on Dask."""
