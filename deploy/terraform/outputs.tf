output "api_service_url" {
  description = "The service's URL (as the original's `terraform output -raw api_service_url`)."
  value       = google_cloud_run_v2_service.api.uri
}

output "service_account" {
  description = "The service account the server runs as."
  value       = google_service_account.api.email
}
