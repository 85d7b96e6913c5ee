# The original service's deployment, translated: a Cloud Run service running the example
# server on Firestore, the Firestore database, the secrets it reads, and a service account
# with only the roles it needs. `terraform validate` could not be run where this was written
# (providers cannot be downloaded there); CI parses the files. See docs/migrating.md.

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

resource "google_project_service" "apis" {
  for_each = toset([
    "run.googleapis.com",
    "firestore.googleapis.com",
    "secretmanager.googleapis.com",
  ])
  service            = each.value
  disable_on_destroy = false
}

# The original's database. Set create_database = false when it exists already (a migration
# from the original service): then nothing here touches it.
resource "google_firestore_database" "default" {
  count                   = var.create_database ? 1 : 0
  name                    = "(default)"
  location_id             = var.firestore_location
  type                    = "FIRESTORE_NATIVE"
  deletion_policy         = "ABANDON"
  delete_protection_state = "DELETE_PROTECTION_ENABLED"
  depends_on              = [google_project_service.apis]
}

resource "google_service_account" "api" {
  account_id   = "inventory-api"
  display_name = "inventory-kit API (Cloud Run)"
}

# Read and write Firestore documents; nothing else in the project.
resource "google_project_iam_member" "firestore_user" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.api.email}"
}

resource "google_project_iam_member" "log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.api.email}"
}

resource "google_secret_manager_secret" "jwt" {
  secret_id = "inventory-jwt-secret"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret" "smtp_password" {
  secret_id = "inventory-smtp-password"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

# Only these two secrets, not every secret of the project.
resource "google_secret_manager_secret_iam_member" "jwt" {
  secret_id = google_secret_manager_secret.jwt.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.api.email}"
}

resource "google_secret_manager_secret_iam_member" "smtp_password" {
  secret_id = google_secret_manager_secret.smtp_password.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.api.email}"
}

resource "google_cloud_run_v2_service" "api" {
  name     = "inventory-api"
  location = var.region
  ingress  = "INGRESS_TRAFFIC_ALL"

  template {
    service_account                  = google_service_account.api.email
    max_instance_request_concurrency = var.concurrency
    timeout                          = "30s"

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    containers {
      image = var.api_image_uri
      args  = ["server"]

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
        # The dispatcher sends mail between requests.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      # No DATABASE_URL: GCP_PROJECT_ID selects Firestore.
      env {
        name  = "GCP_PROJECT_ID"
        value = var.project_id
      }
      env {
        name  = "APP_ENV"
        value = "production"
      }
      env {
        name  = "LOG_FORMAT"
        value = "json"
      }
      env {
        name  = "SMTP_HOST"
        value = var.smtp_host
      }
      env {
        name  = "SMTP_PORT"
        value = tostring(var.smtp_port)
      }
      env {
        name  = "SMTP_USER"
        value = var.smtp_user
      }
      env {
        name  = "SMTP_FROM"
        value = var.smtp_from
      }
      env {
        name  = "ADMIN_EMAILS"
        value = join(",", var.admin_emails)
      }
      env {
        name = "JWT_SECRET"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.jwt.secret_id
            version = "latest"
          }
        }
      }
      env {
        name = "SMTP_PASSWORD"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.smtp_password.secret_id
            version = "latest"
          }
        }
      }

      startup_probe {
        period_seconds    = 1
        failure_threshold = 30
        http_get {
          path = "/health"
        }
      }
      liveness_probe {
        period_seconds = 10
        http_get {
          path = "/health"
        }
      }
    }
  }

  depends_on = [
    google_project_iam_member.firestore_user,
    google_secret_manager_secret_iam_member.jwt,
    google_secret_manager_secret_iam_member.smtp_password,
  ]
}

# Public API, as the original's.
resource "google_cloud_run_v2_service_iam_member" "public" {
  count    = var.public ? 1 : 0
  name     = google_cloud_run_v2_service.api.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "allUsers"
}
