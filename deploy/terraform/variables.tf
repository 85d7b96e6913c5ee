variable "project_id" {
  description = "The Google Cloud project (also GCP_PROJECT_ID of the server)."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run service."
  type        = string
  default     = "us-central1"
}

variable "api_image_uri" {
  description = "The server image (the repository's Dockerfile, built with --features firestore)."
  type        = string
}

variable "create_database" {
  description = "Create the (default) Firestore database; false when migrating onto the original's."
  type        = bool
  default     = false
}

variable "firestore_location" {
  description = "Location of a new Firestore database."
  type        = string
  default     = "nam5"
}

variable "min_instances" {
  description = "Instances kept warm (the dispatcher runs in every instance)."
  type        = number
  default     = 1
}

variable "max_instances" {
  description = "Upper bound on instances."
  type        = number
  default     = 10
}

variable "concurrency" {
  description = "Requests per instance at once."
  type        = number
  default     = 80
}

variable "smtp_host" {
  description = "SMTP relay host."
  type        = string
}

variable "smtp_port" {
  description = "SMTP relay port (587 STARTTLS, 465 implicit TLS)."
  type        = number
  default     = 587
}

variable "smtp_user" {
  description = "SMTP user name (its password is the inventory-smtp-password secret)."
  type        = string
  default     = ""
}

variable "smtp_from" {
  description = "Sender address of confirmation emails."
  type        = string
}

variable "admin_emails" {
  description = "Addresses that get the admin role."
  type        = list(string)
  default     = []
}

variable "public" {
  description = "Allow unauthenticated invocations (the original's API was public)."
  type        = bool
  default     = true
}
