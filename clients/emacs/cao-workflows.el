;;; cao-workflows.el --- Workflow runs for cao.el  -*- lexical-binding: t; -*-

;; SPDX-License-Identifier: Apache-2.0

;;; Commentary:

;; Workflows are multi-step team runs written as scripts in .cao/workflows/ (docs/workflows.md);
;; every step is journaled, so a run survives a crash.  These commands start one, resume one and
;; list the runs with their steps: cao/runWorkflow, cao/resumeWorkflow, cao/listWorkflowRuns.
;; cao.el tells in the echo area when a run ends (cao/workflowRun).
;;
;;   M-x cao-workflow-run      M-x cao-workflow-resume      M-x cao-workflow-runs (g refresh)

;;; Code:

(require 'cl-lib)
(require 'tabulated-list)
(require 'cao)

(defun cao-workflow-parse-inputs (text)
  "TEXT as `name=value' words, an inputs plist for cao/runWorkflow; a `user-error' if not."
  (let (inputs)
    (dolist (word (split-string (or text "") "[ \t\n]+" t))
      (unless (string-match "\\`\\([^=]+\\)=\\(.*\\)\\'" word)
        (user-error "cao: %s is not name=value" word))
      (setq inputs (plist-put inputs (intern (concat ":" (match-string 1 word))) (match-string 2 word))))
    inputs))

;;;###autoload
(defun cao-workflow-run (name inputs &optional callback)
  "Start the workflow NAME with INPUTS (a string of name=value words, or a plist).
CALLBACK, if given, gets the run as started (a WorkflowRunInfo plist)."
  (interactive
   (let* ((workflows (append (plist-get (cao-request :cao/listWorkflows nil) :workflows) nil))
          (name (completing-read "Run workflow: " (mapcar (lambda (w) (plist-get w :name)) workflows) nil t)))
     (list name (read-string (format "Inputs of %s (name=value ...): " name)))))
  (let ((params (list :name name
                      :inputs (or (if (stringp inputs) (cao-workflow-parse-inputs inputs) inputs)
                                  (make-hash-table)))))
    (cao--request-async (cao--server) :cao/runWorkflow params
                        (lambda (result)
                          (let ((run (plist-get result :run)))
                            (message "cao: workflow %s started as run %s" name (plist-get run :runId))
                            (when callback (funcall callback run)))))))

;;;###autoload
(defun cao-workflow-resume (run-id)
  "Go on with the workflow run RUN-ID (finished steps are not run again)."
  (interactive
   (list (completing-read "Resume run: "
                          (cl-loop for run across (plist-get (cao-request :cao/listWorkflowRuns nil) :runs)
                                   unless (equal (plist-get run :status) "completed")
                                   collect (plist-get run :runId))
                          nil t)))
  (cao--request-async (cao--server) :cao/resumeWorkflow (list :runId run-id)
                      (lambda (_result) (message "cao: run %s resumed" run-id))))


;;; The list

(define-derived-mode cao-workflow-runs-mode tabulated-list-mode "CAO runs"
  "Workflow runs and their steps."
  (setq tabulated-list-format [("Run" 13 t) ("Workflow" 16 t) ("Step" 5 nil) ("Profile" 16 nil)
                               ("Status" 11 t) ("Worker" 9 nil) ("Answer or error" 0 nil)])
  (add-hook 'tabulated-list-revert-hook #'cao--workflow-runs-entries nil t)
  (tabulated-list-init-header))

(defun cao--workflow-runs-entries ()
  "Fill the list from the sidecar: a row per run, then one per step."
  (setq tabulated-list-entries
        (cl-loop for run across (plist-get (cao-request :cao/listWorkflowRuns (list :limit 20)) :runs)
                 for id = (plist-get run :runId)
                 collect (list id (vector id (plist-get run :name) "" "" (plist-get run :status) ""
                                          (or (plist-get run :error) "")))
                 append (cl-loop for step across (plist-get run :steps)
                                 collect (list (format "%s/%s" id (plist-get step :key))
                                               (vector "" "" (format "%s" (plist-get step :key))
                                                       (plist-get step :profile) (plist-get step :status)
                                                       (or (plist-get step :terminalId) "-")
                                                       (cao--first-line (or (plist-get step :answer)
                                                                            (plist-get step :error) ""))))))))

;;;###autoload
(defun cao-workflow-runs ()
  "List the latest workflow runs and their steps (g refreshes)."
  (interactive)
  (let ((project default-directory)
        (buffer (get-buffer-create "*cao workflow runs*")))
    (with-current-buffer buffer
      (cao-workflow-runs-mode)
      (setq default-directory project)
      (cao--workflow-runs-entries)
      (tabulated-list-print))
    (pop-to-buffer buffer)
    buffer))

(provide 'cao-workflows)
;;; cao-workflows.el ends here
